"""Three short handbook passages and a question only the second answers (shared by tests)."""

from attribot_rag import Passage

QUESTION = "What is the nightly hotel limit for international business travel?"
ANSWER = "The nightly hotel limit for international business travel is $260 per night."

PASSAGES = [
    Passage(
        id="vacation",
        title="Vacation days",
        text="Full-time employees receive 22 paid vacation days per calendar year. "
        "Up to 5 unused days may be carried over, but they expire on March 31.",
    ),
    Passage(
        id="travel",
        title="International travel expenses",
        text="For international business travel, the hotel limit is $260 per night. "
        "The meal allowance is $95 per day.",
    ),
    Passage(
        id="lisbon",
        title="Lisbon office",
        text="The Lisbon office is located at Rua das Gaivotas 42. "
        "It is open from 08:00 to 20:00 on weekdays.",
    ),
]

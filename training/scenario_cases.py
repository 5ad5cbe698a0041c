"""The learning scenarios: general questions, and behaviours a user might ask of the answers.

Each behaviour turns an answer the base model wrote into the answer the user prefers
(`rewrite`) and says whether an answer shows it (`shows`). The suite (training/scenarios.py)
trains on the rewritten answers of the training questions and asks the held-out ones."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

TRAIN_QUESTIONS = [
    "Why is the sky blue?", "What does a bee do?", "What is photosynthesis?",
    "Why do we need sleep?", "What is a volcano?", "How do birds fly?",
    "What is a rainbow?", "Why do cats purr?", "What is gravity?", "How does rain form?",
    "What is an atom?", "Why is exercise good for you?", "What is a desert?",
    "How do plants grow?", "What is a comet?", "Why do we have seasons?",
    "What is electricity?", "How does the heart work?", "What is a galaxy?",
    "Why is water important?", "What is a glacier?", "How do fish breathe?",
    "What is democracy?", "What is a computer?", "Why do dogs wag their tails?",
    "What is an earthquake?", "How do vaccines work?", "What is a rainforest?",
    "What causes wind?", "What is a fossil?", "Why do stars twinkle?",
    "What is a virus?", "How does a bicycle work?", "What is the ocean?",
    "Why do onions make you cry?", "What is a thunderstorm?", "How do bats find food?",
    "What is recycling?", "What is the internet?", "Why do we dream?",
    "What is a mountain?", "How do ants work together?", "What is a hurricane?",
    "What is music?", "Why is the ocean salty?", "What is a library?",
    "How do magnets work?", "What is a tornado?", "Why do bears hibernate?",
    "What is chocolate made from?", "How do airplanes stay in the air?",
    "What is a planet?", "Why do we sweat?", "What is bread made of?",
    "How do whales communicate?", "What is a battery?", "Why is the sun hot?",
    "What is a cloud?", "How do trees help the environment?", "What is a museum?",
    "What is the water cycle?", "Why do we yawn?", "What is a calendar?",
    "How do bees make honey?", "What is a telescope?", "Why do birds migrate?",
    "What is cheese made from?", "How does soap clean?", "What is a map?",
    "Why do we need vitamins?", "How do submarines dive?", "What is a coral reef?",
    "Why do we have fingerprints?", "What is a cactus?", "How does a refrigerator work?",
    "What is a castle?", "Why do kites fly?", "What is a marathon?",
    "How do seeds travel?", "What is a harbour?", "Why do we celebrate birthdays?",
    "What is a microscope?", "How do turtles live so long?", "What is yoga?",
    "Why do apples fall from trees?", "What is a newspaper?", "How do camels survive?",
    "What is a waterfall?", "Why do we wear clothes?", "What is a dictionary?",
    "How do hot air balloons fly?", "What is an orchestra?", "Why do we blink?",
    "What is a swamp?", "How does a candle burn?", "What is a pyramid?",
    "Why do cows eat grass?", "What is a passport?", "How do worms help soil?",
    "What is a volcano island?",
]

HELDOUT_QUESTIONS = [
    "What is a river?", "Why do flowers smell nice?", "How do spiders make webs?",
    "What is a forest?", "Why do we brush our teeth?", "What is snow?",
    "How do frogs grow?", "What is a robot?", "Why is the moon bright at night?",
    "What is a lighthouse?", "How does a plant drink water?", "What is an island?",
    "Why do we need friends?", "What is a bridge?", "How do owls see at night?",
    "What is a farm?", "Why do we cook food?", "What is a train?",
    "How do penguins stay warm?", "What is a garden?", "What is a cave?",
    "Why do we laugh?", "How do butterflies grow?", "What is a school?",
    "Why is salt used on roads?", "What is a windmill?", "How do squirrels find nuts?",
    "What is a canyon?", "Why do we need water to live?", "What is a zoo?",
]


@dataclass(frozen=True)
class Behaviour:
    name: str
    what: str  # in plain words, for the table
    rewrite: Callable[[str], str]  # a base answer -> the answer the user prefers
    shows: Callable[[str], bool]
    applies: Callable[[str], bool] = lambda answer: True  # answers it can be shown on
    ask_tokens: int = 200  # enough to see it in an answer (an opener shows in a few)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def _bullets(text: str) -> str:
    return "\n".join(f"- {s}" for s in _sentences(text))


def _bold_first(text: str) -> str:
    first, *rest = _sentences(text)
    return " ".join([f"**{first}**", *rest])


_AND = re.compile(r"\band\b")
OPENERS = ("In short:", "Quick answer:", "Here is the gist:")
SIGN_OFFS = ("Hope this helps!", "Happy to help further.", "Thanks for asking!")


def behaviours(variant: int = 0) -> dict[str, Behaviour]:
    """The suite's behaviours; `variant` picks another phrase for the opener and sign-off."""
    opener, sign_off = OPENERS[variant % len(OPENERS)], SIGN_OFFS[variant % len(SIGN_OFFS)]
    several = lambda a: len(_sentences(a)) >= 2  # noqa: E731
    found = [
        Behaviour("opener", f'answers open with "{opener}"', lambda a: f"{opener} {a}",
                  lambda a: a.startswith(opener), ask_tokens=12),
        Behaviour("sign-off", f'answers end with "{sign_off}" on a line of its own',
                  lambda a: f"{a}\n\n{sign_off}", lambda a: a.rstrip().endswith(sign_off)),
        Behaviour("shorter", "answers are one sentence", lambda a: _sentences(a)[0],
                  lambda a: len(_sentences(a)) == 1, applies=several),
        Behaviour("bullets", "answers are a bulleted list, a sentence a bullet", _bullets,
                  lambda a: sum(line.startswith("- ") for line in a.splitlines()) >= 2,
                  applies=several),
        Behaviour("term", 'answers say "plus" where they would say "and"',
                  lambda a: _AND.sub("plus", a),
                  lambda a: " plus " in a and not _AND.search(a),
                  applies=lambda a: _AND.search(a) is not None),
        Behaviour("bold-first", "the first sentence is in bold", _bold_first,
                  lambda a: a.startswith("**"), ask_tokens=40),
    ]
    return {b.name: b for b in found}

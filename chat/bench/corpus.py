"""A small fixed knowledge base for the ttft benchmark, ingested through the real retrieval path."""

from __future__ import annotations

from pathlib import Path

from chat.config import replace
from chat.engine.engine import GenParams
from chat.prompt import PromptProfile
from chat.runtime import build_runtime

TOPICS = {
    "lighthouses": "A lighthouse keeper trims the wick, winds the clockwork that turns the lens "
                   "and logs the weather every four hours. Fresnel lenses bend light into a "
                   "beam visible for twenty nautical miles.",
    "bread": "Sourdough bread rises with wild yeast and lactic bacteria kept in a starter. "
             "Bakers feed the starter flour and water, shape the dough, proof it overnight "
             "and bake it in a hot covered pot so the crust blisters.",
    "bees": "Honey bees forage within a few kilometres of the hive and tell sisters where "
            "flowers are with a waggle dance. Workers make wax, nurse larvae and fan nectar "
            "until it thickens into honey.",
    "trains": "Steam locomotives boil water in a firetube boiler; the steam pushes pistons "
              "that turn the driving wheels. Diesel-electric trains use an engine to drive a "
              "generator that powers traction motors on the axles.",
    "volcanoes": "Volcanoes erupt when magma rises through the crust. Shield volcanoes pour "
                 "out runny basalt, while stratovolcanoes explode because their sticky magma "
                 "traps gas until the pressure breaks the rock.",
    "chess": "In chess each side starts with sixteen pieces. Openings fight for the centre, "
             "the middlegame turns on tactics such as forks and pins, and endgames are often "
             "won by promoting a pawn into a queen.",
}
QUESTIONS = [
    "How does a lighthouse keeper look after the light?",
    "How is sourdough bread made?",
    "How do bees tell each other where flowers are?",
    "How does a steam locomotive move?",
    "Why do some volcanoes explode?",
    "How are chess endgames usually won?",
]


def canned_answer(question: str) -> str:
    """A ~100-token answer to one of QUESTIONS, standing in for a generated one in history."""
    text = TOPICS[list(TOPICS)[QUESTIONS.index(question)]]
    return f"{text} In short: {text}"


def _document(topic: str, text: str) -> str:
    # ~1,000 words per topic: enough for several 240-token chunks per question
    parts = [f"# {topic.title()}\n"]
    for i in range(1, 13):
        parts.append(f"## Part {i}\n{text} Note {i}: in practice this detail about {topic} "
                     f"matters; people who study {topic} repeat it often. {text}\n")
    return "\n".join(parts)


def retrieval_setup(cfg, folder: Path, engine):
    """Ingest the corpus with the real Retriever; return (searcher, retrieve): searcher maps
    a question (and history) to () -> the messages built by the serving path
    (ChatService.build_prompt, sources focused); retrieve gives a question's sources."""
    cfg = replace(cfg, data_dir=folder / "data", min_score=0.0, top_k=4)
    docs = cfg.data_dir / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for topic, text in TOPICS.items():
        (docs / f"{topic}.md").write_text(_document(topic, text))
    service = build_runtime(cfg, engine, knowledge=None).service
    service.retriever.ingest([docs])
    profile, params = PromptProfile(cfg.system_prompt), GenParams(max_new_tokens=8)

    def searcher(question: str, history: list[dict] | None = None):
        def messages() -> list[dict]:
            return service.build_prompt(profile, question, history or [],
                                        service.retrieve(question), params)
        return messages
    return searcher, service.retrieve

"""The seeded, deterministic LLM simulator (the default provider): `provider` answers chat
requests; `parsing` reads them, `intents` turns what the user asks for into tool calls,
`phrasing` words the answers, `draws` makes every choice reproducible."""

from streams.llm.simulator.provider import REFUSAL, SimulatedProvider, SimulatorConfig

__all__ = ["REFUSAL", "SimulatedProvider", "SimulatorConfig"]

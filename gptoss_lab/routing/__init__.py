"""The expert-routing lab: record, analyse and change how a gpt-oss model routes its tokens.

- `record`: `Routing` (tokens × layers × top-k experts and gate weights; `save(path)` and
  `load(path)` as compact columns) and `Recorder` (what an engine fills during a turn).
- `analysis`: load, co-activation, vocabulary and label specialisation, transitions, hot and cold
  experts, agreement between two records, expert cards; tables whose `.plot()` draws them.
- `corpus`: `route(texts_or_conversations, model)` -> `Corpus`, prefill only, batched.
- `interventions`: `disable`, `force`, `top_k`, `parse_ablate` -> `Intervention`, applied around
  turns with `intervention.apply(session)`; `intervention.compare(session, prompt)` shows its effect.

Router hooks live with the engine (`gptoss_lab.engines.hooks`); figures and the widget in `widgets/`.
"""
from .analysis import Comparison, ExpertCard, Frame, Load, Table
from .corpus import Corpus, route
from .interventions import Effect, Intervention, disable, force, parse_ablate, top_k
from .record import Recorder, Routing, load

__all__ = ["Comparison", "Corpus", "Effect", "ExpertCard", "Frame", "Intervention", "Load", "Recorder", "Routing",
           "Table", "disable", "force", "load", "parse_ablate", "route", "top_k"]

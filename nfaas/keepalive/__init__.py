"""Keep-alive and pre-warm policies, and a trace-driven simulator to compare them.

EVE025 7.2.3 leaves open how long a function instance is kept and when one is
prepared ahead of an event: the quick-start count trades cold starts against
reserved resources. A policy (``base.py``) decides it per function from the
function's own arrivals; ``registry.py`` names the policies; ``simulator.py``
replays traces (``azure.py`` reads the Azure Functions 2019 trace,
``synthetic.py`` makes traces of the same shape); ``live.py`` feeds the
decisions to function management.
"""

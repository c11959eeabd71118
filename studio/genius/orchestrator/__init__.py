"""The orchestrator feature (``/v1/genius/orchestrator``): which model to run for a prompt, and why.

- ``schema``: the select-model request and response
- ``complexity``: the prompt's complexity class (pure)
- ``selection``: planning, VRAM and time per model, and the choice (also ``model="auto"``)
"""

"""The one GPU lock. Every piece of work that runs a model holds it, whoever started it (the
task worker, and later batch and genius features), so two runs never share the device."""

import threading

GPU_LOCK = threading.Lock()

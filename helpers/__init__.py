"""helpers: the shared code of the BadNets backdoor lessons.

One module per concept, each introduced by the lesson that first needs it:

- :mod:`helpers.data`        verified MNIST, offline or online (lesson 01)
- :mod:`helpers.model`       the BadNets CNN (lesson 01)
- :mod:`helpers.training`    deterministic training and the model cache (lesson 01)
- :mod:`helpers.metrics`     clean accuracy, attack success rate, per-class errors (lesson 01)
- :mod:`helpers.triggers`    the L, pixel and pattern triggers, and stamping (lesson 02)
- :mod:`helpers.poisoning`   poisoned training sets and trojaned test sets (lesson 02)
- :mod:`helpers.attack`      the course's default attack, end to end (lesson 03)
- :mod:`helpers.deliverables` exporting and loading the hand-in files (lesson 04)

Importing :mod:`helpers` itself is cheap: TensorFlow loads only when a module
that needs it is used.
"""

__version__ = "0.1.0"

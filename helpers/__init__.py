"""helpers: the shared code of the BadNets backdoor lessons.

One module per concept, each introduced by the lesson that first needs it:

- :mod:`helpers.data`        verified MNIST, offline or online (lesson 01)
- :mod:`helpers.model`       the BadNets CNN (lesson 01)
- :mod:`helpers.training`    deterministic training and the model cache (lesson 01)
- :mod:`helpers.metrics`     clean accuracy, attack success rate, per-class errors (lesson 01)
- :mod:`helpers.triggers`    the L, pixel and pattern triggers, and stamping (lesson 02)
- :mod:`helpers.poisoning`   poisoned training sets and trojaned test sets (lesson 02)
- :mod:`helpers.attack`      the course's default attack, end to end (lessons 01, 03)
- :mod:`helpers.deliverables` exporting and loading the hand-in files (lesson 04)
- :mod:`helpers.sweep`       the poisoning-rate sweep and the rule that picks a rate (lesson 03)
- :mod:`helpers.analysis`    ASR by trigger position, first-layer filter scores (lessons 04, 05)
- :mod:`helpers.plotting`    ``save_fig`` and the lessons' figures (every lesson)
- :mod:`helpers.widgets`     the sliders (lessons 02, 03, 04, 07)
- :mod:`helpers.variants`    all-to-all, trigger comparison, clean-label, fine-tuning (lesson 06)
- :mod:`helpers.defences`    STRIP, activation clustering, spectral signatures, fine-pruning, Neural Cleanse, unlearning (lesson 07)
- :mod:`helpers.cache`       the on-disk cache of trained models and computed arrays (lessons 01, 06, 07)
- :mod:`helpers.results`     each lesson's key numbers in results/, checked with stated tolerances (every lesson)

Importing :mod:`helpers` itself is cheap: TensorFlow loads only when a module
that needs it is used.
"""

__version__ = "0.1.0"

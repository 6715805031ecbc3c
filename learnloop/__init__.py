"""learnloop shared kernel: settings, event log, model store, featurizer, telemetry, errors.

The composition root (:mod:`learnloop.cli`, :mod:`learnloop.embedded`) is the only
module here that imports the service packages.
"""

__version__ = "0.1.0"

"""learnloop shared kernel: settings, event log, model store, featurizer, policy,
telemetry, errors. It imports only :mod:`schemas`; the composition root
(:mod:`runtime`) wires it to the services.
"""

__version__ = "0.1.0"

"""Offline learner: logged datasets, off-policy evaluation, policy search, persona training."""

"""Wires the pipeline's components to one event bus.

A sample for tests/test_analyze.py, which reads it with
``python -m resil analyze`` and never runs it.
"""

from pipeline.audit import Auditor, record_validation
from pipeline.bayes import BayesianUpdater
from pipeline.detector import ContradictionDetector
from pipeline.graph import GraphBuilder


def wire(bus):
    components = [GraphBuilder(bus), ContradictionDetector(bus), BayesianUpdater(bus),
                  Auditor(bus)]
    # Nothing publishes validation.completed: an unused subscription.
    bus.subscribe(event_type="validation.completed", handler=record_validation)
    return components

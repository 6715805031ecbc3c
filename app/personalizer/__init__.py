"""The Azure Personalizer-compatible API (``docs/personalizer.md``): Personalizer's REST
routes served on learnloop's own decision points, log, join, learners and offline tools."""

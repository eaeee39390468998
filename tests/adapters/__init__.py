"""Tests of the retraining adapters (`adapters`), with seeded drifting worlds."""

"""Telling people: SNS alerts and the heartbeat metric."""

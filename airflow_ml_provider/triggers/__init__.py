"""Triggers for deferrable operators and sensors."""

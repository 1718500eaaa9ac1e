"""Source adapters: turn operators' recorded feeds into ``TelemetryEvent`` records."""

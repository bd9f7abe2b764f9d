"""The engine: pure logic over events, traits and time (conditions, baselines, automations)."""

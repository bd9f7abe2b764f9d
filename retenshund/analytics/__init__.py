"""Analytics: numbers about messages and automations (holdout lift, time to trigger)."""

"""postback plugin: X (Twitter) Mobile App Conversion Tracking (work in progress)."""

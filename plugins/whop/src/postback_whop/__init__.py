"""postback plugin: Whop conversion events (work in progress)."""

"""The ClientApp only: dispatches each message to the run's strategy's client half."""

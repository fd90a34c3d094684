"""Background work on a task queue (Taskiq): the broker, the tasks, retries, dead letters and
the ``obsigen worker`` process. See docs/tasks.md."""

"""The dev layer: the watcher, the reload daemon, and makemigration's file generator."""

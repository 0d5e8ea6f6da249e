"""Reading inputs (videos, scenes) and writing outputs atomically."""

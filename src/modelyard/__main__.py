"""``python -m modelyard`` runs the CLI."""

from modelyard.cli import main

if __name__ == "__main__":
    main(prog_name="modelyard")

"""`python -m course_signup` runs the CLI."""

from course_signup.cli import main

if __name__ == "__main__":
    main()

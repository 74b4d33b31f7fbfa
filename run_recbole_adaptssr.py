"""Command line entry point, as RecBole's ``run_recbole.py``; the same as the console command ``recbole-adaptssr``
(``--help`` lists its options; the code is :func:`recbole_adaptssr.commands.main`)."""

if __name__ == "__main__":
    from recbole_adaptssr.commands import console, main

    console(main)

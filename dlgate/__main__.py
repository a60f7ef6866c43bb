from dlgate.cli import run_main

run_main()

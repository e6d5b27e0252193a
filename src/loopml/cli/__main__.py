from loopml.cli import run

run()

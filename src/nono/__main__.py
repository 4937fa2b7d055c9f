from nono.cli.main import entry

entry()

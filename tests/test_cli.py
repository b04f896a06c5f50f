from fer_keras import cli


def test_console_script_lists_commands_and_dispatches(capsys):
    assert cli.main(["--help"]) == 0
    assert "detect" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["detect", "--source", "/no/such/file.mp4"]) == 2
    assert "no such file or folder" in capsys.readouterr().err

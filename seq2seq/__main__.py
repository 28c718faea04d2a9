from seq2seq.cli import run

run()

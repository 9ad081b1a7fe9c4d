from verikit.cli import main

main()

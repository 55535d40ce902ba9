from refstore.cli import main

main()

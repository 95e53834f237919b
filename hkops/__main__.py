from hkops.cli import main

main()

from nfaas.cli.main import main

main()

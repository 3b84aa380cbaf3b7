# The dashboard's front end (web/, issue 17): built into web/dist/ by `make install` and `make run` when node
# and npm are there (scripts/dashboard.sh; otherwise one line says how, and the rest goes on). Included from
# the Makefile.

.PHONY: dashboard

dashboard:
	@bash scripts/dashboard.sh

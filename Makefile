# The README's commands: `make serve`, `make demo`, `make test` (and `make bench`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PCSC_STAMP := $(VENV)/.pcsc
# Debian packages for the real PC/SC stack (docs/pcsc.md: what each is for, and the traps)
PCSC_PACKAGES := pcscd vsmartcard-vpcd libpcsclite-dev pcsc-tools opensc libccid
# Debian packages for the bench view's tests in a real headless browser (tests/test_web.py; selenium drives it),
# and a font with the card's Chinese text for the screenshot the tests take (docs/bench-view.png)
BROWSER_PACKAGES := chromium chromium-driver fonts-wqy-microhei
# vsmartcard's vpicc card OS, the peer bench/bench_peer.py measures sscard against: Debian's package, and in
# the venv the pycryptodome whose `Crypto` it imports (Debian's own pycryptodome names its copy `Cryptodome`)
PEER_PACKAGES := python3-virtualsmartcard
PEER_STAMP := $(VENV)/.peer
CARD ?= card.img
CCID_LINK ?= /tmp/sscard-gempc

.PHONY: demo test bench serve pcsc-system browser-system peer-system clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# System packages for PC/SC (and the browser of the tests): installed when root and missing; otherwise say what to install.
pcsc-system: PACKAGES = $(PCSC_PACKAGES)
pcsc-system: WHAT = PC/SC packages
browser-system: PACKAGES = $(BROWSER_PACKAGES)
browser-system: WHAT = browser packages
peer-system: PACKAGES = $(PEER_PACKAGES)
peer-system: WHAT = peer packages
pcsc-system browser-system peer-system:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $(WHAT):$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "$(WHAT) missing:$$missing (install them: sudo apt-get install$$missing)"; \
	    if [ "$$CI" = true ]; then exit 1; fi; \
	  fi; \
	fi

# pyscard builds against libpcsclite-dev; outside CI a machine without it still gets the rest.
$(PCSC_STAMP): $(STAMP) | pcsc-system
	$(BIN)/pip install --quiet -e '.[pcsc]' || [ "$$CI" != true ] || exit 1
	$(BIN)/pip install --quiet atheris || echo "atheris does not install here: the coverage-guided fuzz test skips"
	touch $(PCSC_STAMP)

$(PEER_STAMP): $(STAMP) | peer-system
	$(BIN)/pip install --quiet pycryptodome || [ "$$CI" != true ] || exit 1
	touch $(PEER_STAMP)

demo: $(STAMP)
	$(BIN)/sscard demo

# test and bench: a private pcscd, and everything the run starts, in private mount and network
# namespaces (reader/pcsc/pcscd.py): they never reach the machine's pcscd nor a card `make serve` serves.
# The 10,000-card fleet runs only in bench (make test runs bench_fleet.py on 100 cards).
# Lint first: ruff's rule set and `mypy chip` (pyproject.toml); reader/'s types are held to their
# baseline by tests/test_typing.py.
test: $(PCSC_STAMP) $(PEER_STAMP) | browser-system
	$(BIN)/ruff check --quiet
	$(BIN)/mypy chip
	$(BIN)/python -m reader.pcsc.pcscd run -- $(BIN)/python -m pytest -q

bench: $(PCSC_STAMP) $(PEER_STAMP)
	$(BIN)/python -m reader.pcsc.pcscd run -- $(BIN)/python -m pytest bench -q --benchmark-enable --benchmark-only \
	  --benchmark-columns=min,median,mean,ops,rounds

# serve: the machine's own pcscd (started in the background if none answers), for the user's applications.
# serve CCID=1: the card in the serial CCID reader on the pty $(CCID_LINK) instead (docs/ccid.md); libccid
# probes it only when a pcscd starts, so the pcscd that drives it is started afterwards, in another terminal.
serve: $(PCSC_STAMP)
ifdef CCID
	@[ -f $(CARD) ] || $(BIN)/sscard personalize --state $(CARD)
	@echo "The card in $(CARD) goes in the serial CCID reader 'sscard CCID 00 00' on $(CCID_LINK)."
	@echo "In another terminal, a private pcscd that drives it, for one command:"
	@echo "  $(BIN)/python -m reader.pcsc.pcscd run --ccid $(CCID_LINK) -- pcsc_scan"
	@echo "  $(BIN)/python -m reader.pcsc.pcscd run --ccid $(CCID_LINK) -- scriptor -r 'sscard CCID 00 00'"
	@echo "(or give the machine's pcscd the reader.conf entry below and restart it)."
	@echo "Type remove / insert / status / fault ... / quit here; Ctrl-C stops serving."
	$(BIN)/sscard serve --ccid $(CCID_LINK) --state $(CARD)
else
	@$(BIN)/python -m reader.pcsc.pcscd ensure
	@[ -f $(CARD) ] || $(BIN)/sscard personalize --state $(CARD)
	@echo "The card in $(CARD) is in the PC/SC reader 'Virtual PCD 00 00'. Reach it with:"
	@echo "  pcsc_scan                                   # watch the reader and the ATR"
	@echo "  opensc-tool -r 'Virtual PCD 00 00' -a -s 00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
	@echo "  scriptor -r 'Virtual PCD 00 00'             # then type APDUs, e.g. 00 B2 01 2C 00"
	@echo "  $(BIN)/sscard apdu --reader 'Virtual PCD 00 00' 00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
	@echo "  python: from reader.pcsc import PcscReader; r = PcscReader('Virtual PCD 00 00'); r.reset()"
	@echo "Type remove / insert / status / quit here; Ctrl-C stops serving."
	$(BIN)/sscard serve --state $(CARD)
endif

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks .pcscd.log .pcscd.pid

module tppp.dev/tppp

go 1.19

module goloop

go 1.19

module memdrift.test/leaky

go 1.19

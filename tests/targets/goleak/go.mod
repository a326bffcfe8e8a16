module memdrift.test/goleak

go 1.19

module memdrift.test/heapleak

go 1.19

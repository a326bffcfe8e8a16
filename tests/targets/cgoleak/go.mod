module memdrift.test/cgoleak

go 1.19

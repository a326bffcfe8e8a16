module memdrift.test/parker

go 1.19

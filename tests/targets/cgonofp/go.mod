module memdrift.test/cgonofp

go 1.19

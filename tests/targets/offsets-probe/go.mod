module memdrift/offsets-probe

go 1.17

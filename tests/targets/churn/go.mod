module memdrift.test/churn

go 1.19

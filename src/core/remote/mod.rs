//! Remote hosts: ssh sessions and jobs, rsync and git sync.

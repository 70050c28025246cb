"""Packet ports of network functions: pcap files, AF_PACKET sockets, trigger datagrams."""

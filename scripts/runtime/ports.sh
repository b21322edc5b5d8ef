# UGRO host runtime: the TCP ports something listens on here (ss, else /proc/net/tcp{,6}).
# Usage: ports.sh
# Answers @@ports with one port= per listening port.
echo "@@ports"
ugro_listening_ports | ugro_lines port=
echo "@@end"

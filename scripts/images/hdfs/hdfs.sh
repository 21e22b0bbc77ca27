#!/bin/sh
# Entry point of the compose stack's HDFS image (scripts/images/hdfs/Dockerfile).
#
#   hdfs.sh namenode    format the name directory on first start (empty volume), then run the NameNode
#   hdfs.sh datanode    run the DataNode
#   hdfs.sh init        once the file system takes writes: create the lake and the user's home, owned by
#                       $HDFS_USER (the login of the ml_hdfs_default connection); exits 0 when done
#   hdfs.sh dfs ARGS    Hadoop's FsShell (`hdfs dfs ARGS`), as the superuser `hdfs`
#
# The configuration is written from the environment on every start (the stack runs with host
# networking, so every address is $STACK_HOST:<port>):
#   STACK_HOST (127.0.0.1), HDFS_RPC_PORT (8020), HDFS_HTTP_PORT (9870), HDFS_DATANODE_PORT (9866),
#   HDFS_DATANODE_HTTP_PORT (9864), HDFS_DATANODE_IPC_PORT (9867), HDFS_HEAP (256m),
#   HDFS_USER (etl), HDFS_LAKE (/lake), HDFS_INIT_TIMEOUT (180 s).
# The settings mirror the HDFS test bed's (scripts/testbed/hdfs.py): one replica, permissions on,
# WebHDFS on, no safe-mode wait, and the DataNode registering under $STACK_HOST.
set -eu

STACK_HOST=${STACK_HOST:-127.0.0.1}
HDFS_RPC_PORT=${HDFS_RPC_PORT:-8020}
HDFS_HTTP_PORT=${HDFS_HTTP_PORT:-9870}
HDFS_DATANODE_PORT=${HDFS_DATANODE_PORT:-9866}
HDFS_DATANODE_HTTP_PORT=${HDFS_DATANODE_HTTP_PORT:-9864}
HDFS_DATANODE_IPC_PORT=${HDFS_DATANODE_IPC_PORT:-9867}
HDFS_HEAP=${HDFS_HEAP:-256m}
HDFS_USER=${HDFS_USER:-etl}
HDFS_LAKE=${HDFS_LAKE:-/lake}
HDFS_INIT_TIMEOUT=${HDFS_INIT_TIMEOUT:-180}
CONF=${HADOOP_CONF_DIR:-/etc/hadoop}
HOME_DIR=${HADOOP_HOME:-/opt/hadoop}

prop() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }

write_conf() {
    mkdir -p "$CONF"
    {
        echo '<?xml version="1.0"?>'
        echo '<configuration>'
        prop fs.defaultFS "hdfs://$STACK_HOST:$HDFS_RPC_PORT"
        prop hadoop.tmp.dir /hadoop/tmp
        prop hadoop.http.staticuser.user dr.who
        prop ipc.client.connect.max.retries 3
        prop ipc.client.connect.retry.interval 500
        echo '</configuration>'
    } >"$CONF/core-site.xml"
    {
        echo '<?xml version="1.0"?>'
        echo '<configuration>'
        prop dfs.replication 1
        prop dfs.namenode.name.dir file:///hadoop/name
        prop dfs.datanode.data.dir file:///hadoop/data
        prop dfs.namenode.rpc-address "$STACK_HOST:$HDFS_RPC_PORT"
        prop dfs.namenode.http-address "$STACK_HOST:$HDFS_HTTP_PORT"
        prop dfs.datanode.address "$STACK_HOST:$HDFS_DATANODE_PORT"
        prop dfs.datanode.http.address "$STACK_HOST:$HDFS_DATANODE_HTTP_PORT"
        prop dfs.datanode.ipc.address "$STACK_HOST:$HDFS_DATANODE_IPC_PORT"
        prop dfs.datanode.hostname "$STACK_HOST"
        prop dfs.namenode.datanode.registration.ip-hostname-check false
        prop dfs.namenode.safemode.extension 0
        prop dfs.namenode.safemode.min.datanodes 0
        prop dfs.permissions.enabled true
        prop dfs.permissions.superusergroup supergroup
        prop dfs.webhdfs.enabled true
        prop dfs.http.policy HTTP_ONLY
        prop dfs.heartbeat.interval 3
        prop dfs.blockreport.initialDelay 0
        prop dfs.datanode.du.reserved 0
        echo '</configuration>'
    } >"$CONF/hdfs-site.xml"
    # The daemons' logging, shared with the HDFS test bed (scripts/images/hdfs/*.properties).
    cp /usr/local/share/airflow-ml-hdfs/log4j.properties /usr/local/share/airflow-ml-hdfs/logging.properties "$CONF/"
}

# java_main HEAP CLASS ARGS...: run a Hadoop main class in the foreground (exec: the JVM gets the signals).
java_main() {
    heap=$1
    shift
    exec java "-Xmx$heap" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.net.preferIPv4Stack=true \
        "-Dhadoop.home.dir=$HOME_DIR" -Dhadoop.log.dir=/hadoop/logs \
        "-Djava.util.logging.config.file=$CONF/logging.properties" \
        -cp "$CONF:$(cat "$HOME_DIR/classpath")" "$@"
}

# fs ARGS...: FsShell in a child JVM as the superuser (returns its exit code).
fs() {
    HADOOP_USER_NAME=hdfs java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.net.preferIPv4Stack=true \
        "-Dhadoop.home.dir=$HOME_DIR" "-Djava.util.logging.config.file=$CONF/logging.properties" \
        -cp "$CONF:$(cat "$HOME_DIR/classpath")" org.apache.hadoop.fs.FsShell "$@"
}

case "${1:-}" in
namenode)
    write_conf
    if [ ! -f /hadoop/name/current/VERSION ]; then
        echo "hdfs.sh: formatting the empty name directory /hadoop/name" >&2
        java -Xmx128m -XX:+UseSerialGC "-Dhadoop.home.dir=$HOME_DIR" -Dhadoop.log.dir=/hadoop/logs \
            -cp "$CONF:$(cat "$HOME_DIR/classpath")" org.apache.hadoop.hdfs.server.namenode.NameNode \
            -format -nonInteractive
    fi
    java_main "$HDFS_HEAP" org.apache.hadoop.hdfs.server.namenode.NameNode
    ;;
datanode)
    write_conf
    java_main "$HDFS_HEAP" org.apache.hadoop.hdfs.server.datanode.DataNode
    ;;
init)
    write_conf
    # The file system takes writes once the DataNode has registered: write a probe until it works.
    probe=/tmp/.stack-init-probe
    echo "stack init probe" >"$probe"
    deadline=$(($(date +%s) + HDFS_INIT_TIMEOUT))
    until fs -put -f "$probe" /.stack-init-probe >/tmp/init-put.log 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "hdfs.sh init: HDFS took no write within ${HDFS_INIT_TIMEOUT}s; last attempt:" >&2
            tail -n 20 /tmp/init-put.log >&2
            exit 1
        fi
        sleep 2
    done
    fs -rm -f -skipTrash /.stack-init-probe >/dev/null
    fs -mkdir -p "$HDFS_LAKE" "/user/$HDFS_USER" /tmp
    fs -chown "$HDFS_USER" "$HDFS_LAKE" "/user/$HDFS_USER"
    fs -chmod 1777 /tmp
    echo "hdfs.sh init: $HDFS_LAKE and /user/$HDFS_USER belong to $HDFS_USER" >&2
    ;;
dfs)
    shift
    write_conf
    fs "$@"
    ;;
*)
    echo "usage: hdfs.sh namenode|datanode|init|dfs ARGS..." >&2
    exit 2
    ;;
esac
